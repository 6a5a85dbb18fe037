"""Models shipped inside the package, one directory each (see `ganserve.list_shipped_models()`)."""
