# ganserve in a container: batch generation with the shipped model (or one you mount).
#
#   docker build -t ganserve .                         # CPU image (the default target)
#   docker run --rm -v "$PWD/out:/out" ganserve        # 1000 PNGs of the shipped model into ./out
#   docker run --rm -v "$PWD/out:/out" ganserve generate --n 100000 --shard-size 10000 --out /out
#   docker run --rm ganserve info                      # any other ganserve command
#
#   docker build --target gpu -t ganserve:gpu .        # onnxruntime-gpu on an NVIDIA CUDA runtime
#   docker build --target gpu --build-arg TENSORRT=tensorrt-cu13 -t ganserve:gpu-trt .
#   docker run --rm --gpus all -v "$PWD/out:/out" ganserve:gpu
#
# The image runs as user 10001 (group 10001): a bind-mounted /out must be writable by it
# (`chown 10001:10001 out`, or `docker run --user "$(id -u):$(id -g)" ...`). Sharded runs across
# processes or machines: deploy/README.md. The CPU target is built and run for real by
# tests/container/build_and_run.sh (in CI), the gpu target with GANSERVE_TEST_TARGET=gpu (by hand,
# on a Debian base standing in for the CUDA image).
#
# Build arguments:
#   BASE_IMAGE  base of the CPU image; it must provide python3 >= 3.11 (the build reads pyproject.toml
#               with tomllib) and its venv module
#   CUDA_IMAGE  base of the GPU image (Ubuntu with CUDA 13 + cuDNN 9, what onnxruntime-gpu is built for)
#   TENSORRT    GPU image only: pip requirement(s) for TensorRT, e.g. tensorrt-cu13 (default: none)

ARG BASE_IMAGE=python:3.11-slim
ARG CUDA_IMAGE=nvidia/cuda:13.0.2-cudnn-runtime-ubuntu24.04

# PATH is spelled out in both variants: a base image made by `podman import` (as in the tests)
# defines none, and `${PATH}` would then expand to nothing.
#
# Each variant has three stages: a runtime base, a build stage that fills /opt/venv, and the final
# image that copies the venv (so neither the source tree nor pip's caches end up in a layer).
# Dependencies are installed from pyproject.toml alone before the source is copied, so a code
# change rebuilds only the last, small layer.


# ---------------------------------------------------------------- GPU variant (--target gpu)
FROM ${CUDA_IMAGE} AS gpu-base
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 python3-venv \
 && rm -rf /var/lib/apt/lists/*
ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:/usr/local/nvidia/bin:/usr/local/cuda/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    LANG=C.UTF-8 \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1

FROM gpu-base AS gpu-build
ARG TENSORRT=""
COPY pyproject.toml /src/
RUN python3 -m venv /opt/venv \
 && python3 -c 'import sys, tomllib; p = tomllib.load(open(sys.argv[1], "rb"))["project"]; \
print("\n".join(p["dependencies"] + p["optional-dependencies"]["gpu"]))' /src/pyproject.toml > /src/requirements.txt \
 && pip install --no-cache-dir -r /src/requirements.txt ${TENSORRT}
COPY . /src/
RUN pip install --no-cache-dir "/src[gpu]"

FROM gpu-base AS gpu
COPY --from=gpu-build /opt/venv /opt/venv
RUN groupadd --gid 10001 ganserve \
 && useradd --uid 10001 --gid 10001 --create-home --shell /usr/sbin/nologin ganserve \
 && install -d -o 10001 -g 10001 /out
USER 10001:10001
WORKDIR /out
VOLUME /out
ENTRYPOINT ["ganserve"]
CMD ["generate", "--n", "1000", "--out", "/out", "--backend", "onnxruntime"]


# ---------------------------------------------------------------- CPU variant (the default target)
FROM ${BASE_IMAGE} AS cpu-base
ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    LANG=C.UTF-8 \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1

FROM cpu-base AS cpu-build
COPY pyproject.toml /src/
RUN python3 -m venv /opt/venv \
 && python3 -c 'import sys, tomllib; p = tomllib.load(open(sys.argv[1], "rb"))["project"]; \
print("\n".join(p["dependencies"] + p["optional-dependencies"]["onnx"]))' /src/pyproject.toml > /src/requirements.txt \
 && pip install --no-cache-dir -r /src/requirements.txt
COPY . /src/
RUN pip install --no-cache-dir "/src[onnx]"

FROM cpu-base AS cpu
LABEL org.opencontainers.image.title="ganserve" \
      org.opencontainers.image.description="Batch image generation with DCGAN-family generators (CPU, ONNX Runtime)" \
      org.opencontainers.image.licenses="MIT"
COPY --from=cpu-build /opt/venv /opt/venv
RUN groupadd --gid 10001 ganserve \
 && useradd --uid 10001 --gid 10001 --create-home --shell /usr/sbin/nologin ganserve \
 && install -d -o 10001 -g 10001 /out
USER 10001:10001
WORKDIR /out
VOLUME /out
ENTRYPOINT ["ganserve"]
CMD ["generate", "--n", "1000", "--out", "/out"]
