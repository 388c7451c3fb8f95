"""Builds ``media._wire`` from media/wire.c (cffi API mode), at install time through setup.py's ``cffi_modules``.

python media/wire_build.py      # builds it in place by hand, e.g. after editing wire.c
"""

from pathlib import Path

from cffi import FFI

ffibuilder = FFI()
ffibuilder.cdef(
    """
    typedef int (*rcp_protect_fn)(void *ctx, void *rtp, int *len);
    int rcp_write_frame(rcp_protect_fn protect, void *ctx, const unsigned char *head, int head_len, int abs_pos,
                        const unsigned char *abs_time, unsigned int seq, unsigned int ts, int marker,
                        const unsigned char *payload, int payload_len, int segment, unsigned char *out,
                        int out_size, int trailer, int fd, const void *addr, int addrlen, int gso, int *lengths);
    int rcp_socket_address(const char *host, const char *port, unsigned char *out, int out_size);
    """
)
ffibuilder.set_source(
    "media._wire",
    (Path(__file__).with_name("wire.c")).read_text(),
    extra_compile_args=["-O2", "-std=c99", "-D_GNU_SOURCE"],
)

if __name__ == "__main__":
    import os

    os.chdir(Path(__file__).resolve().parents[1])
    ffibuilder.compile(verbose=False)
