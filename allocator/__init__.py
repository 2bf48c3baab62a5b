"""The tiering allocator: a C library loaded with LD_PRELOAD and steered from Python with cffi."""
