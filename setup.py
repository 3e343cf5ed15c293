"""Builds the optional C helper engine._ring (see engine/_ring.c for why it exists).

Without a C compiler the build goes on without it and WSM uses engine/_ringpy.py instead.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "engine._ring",
            sources=["engine/_ring.c"],
            extra_compile_args=["-O2", "-std=gnu11"],
            optional=True,
        )
    ]
)
