"""Only what pyproject.toml cannot say: the native send path of the media plane (media/wire.c, built by cffi)."""

from setuptools import setup

setup(cffi_modules=["media/wire_build.py:ffibuilder"])
