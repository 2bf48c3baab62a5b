"""cffi bindings of the measurement kernels (csrc/membench.c): timed in C, called from Python.

    k = Kernels()                       # builds the library on first use, loads it (cffi ABI mode)
    buf = k.alloc(1 << 30)              # posix_memalign: lands in the calling thread's allocator tier
    k.fill(buf, 1 << 30, threads=2)     # first touch
    gbps = k.stream("seq_read", buf, 1 << 30, threads=2, work=1)

Bandwidths are GB/s (1e9 B/s), latencies ns. The buffers are ordinary heap memory: allocated while a
tier is set (``allocator.tier("slow")``) in a process with the allocator preloaded they live in that
tier's backing, which is the point of measuring through the allocator.
"""

from __future__ import annotations

from typing import Any

from marl_gym.calibrate._build import library_path

STREAM_KINDS = {"seq_read": 0, "seq_write": 1, "seq_write_nt": 2, "rand_read": 3, "rand_write": 4}
"""Streaming kernels by name (see csrc/membench.c)."""

LINE_BYTES = 64

_CDEF = """
typedef struct mb_result { double seconds; uint64_t bytes; uint64_t checksum; } mb_result;
int mb_abi_version(void);
int mb_has_nontemporal(void);
void *mb_alloc(size_t bytes);
void mb_free(void *p);
int mb_stream(int kind, void *buf, size_t bytes, int threads, size_t work, uint64_t seed, mb_result *out);
int mb_fill(void *buf, size_t bytes, int threads);
int mb_build_chain(void *buf, size_t bytes, int random, uint64_t seed);
double mb_chase(void *buf, size_t steps);
double mb_store_latency(void *buf, size_t bytes, size_t lines);
int mb_loaded_latency(void *chain, size_t steps, void *load, size_t load_bytes, int load_threads,
                      double *latency_ns, double *load_gbps);
"""


class KernelError(RuntimeError):
    """A kernel refused its arguments or could not start its threads."""


class Kernels:
    """The loaded kernel library."""

    def __init__(self) -> None:
        import cffi

        self.ffi = cffi.FFI()
        self.ffi.cdef(_CDEF)
        self.lib = self.ffi.dlopen(str(library_path()))
        if self.lib.mb_abi_version() != 1:
            raise KernelError("the measurement kernel library has an unexpected ABI version")
        self.nontemporal = bool(self.lib.mb_has_nontemporal())

    def alloc(self, nbytes: int) -> Any:
        p = self.lib.mb_alloc(int(nbytes))
        if p == self.ffi.NULL:
            raise MemoryError(f"cannot allocate a {nbytes}-byte measurement buffer")
        return p

    def free(self, p: Any) -> None:
        self.lib.mb_free(p)

    @staticmethod
    def address(p: Any) -> int:
        import cffi

        return int(cffi.FFI().cast("uintptr_t", p))

    def fill(self, p: Any, nbytes: int, threads: int) -> None:
        if self.lib.mb_fill(p, int(nbytes), int(threads)) != 0:
            raise KernelError(f"filling {nbytes} bytes with {threads} threads failed")

    def stream(self, kind: str, p: Any, nbytes: int, threads: int, work: int, seed: int = 1) -> float:
        """GB/s of a streaming kernel (`STREAM_KINDS`): `work` passes (sequential) or line accesses per thread."""
        out = self.ffi.new("mb_result *")
        rc = self.lib.mb_stream(STREAM_KINDS[kind], p, int(nbytes), int(threads), int(work), int(seed), out)
        if rc != 0 or out.seconds <= 0:
            raise KernelError(f"kernel {kind} on {nbytes} bytes with {threads} threads failed")
        return float(out.bytes) / float(out.seconds) / 1e9

    def build_chain(self, p: Any, nbytes: int, random: bool, seed: int = 7) -> None:
        if self.lib.mb_build_chain(p, int(nbytes), int(bool(random)), int(seed)) != 0:
            raise KernelError(f"cannot build a pointer chain over {nbytes} bytes")

    def chase_ns(self, p: Any, steps: int) -> float:
        return float(self.lib.mb_chase(p, int(steps)))

    def store_latency_ns(self, p: Any, nbytes: int, lines: int) -> float:
        return float(self.lib.mb_store_latency(p, int(nbytes), int(lines)))

    def loaded_latency(
        self, chain: Any, steps: int, load: Any, load_bytes: int, load_threads: int
    ) -> tuple[float, float]:
        """(chase ns per step, loaders' GB/s) with `load_threads` threads stream-reading `load`."""
        lat = self.ffi.new("double *")
        bw = self.ffi.new("double *")
        rc = self.lib.mb_loaded_latency(chain, int(steps), load, int(load_bytes), int(load_threads), lat, bw)
        if rc != 0:
            raise KernelError(f"loaded latency with {load_threads} loader threads failed")
        return float(lat[0]), float(bw[0])
