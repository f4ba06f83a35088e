#ifndef BREAKWATER_CNGHTTP2_SHIM_H
#define BREAKWATER_CNGHTTP2_SHIM_H

/* libc first, as in CLibevent: Swift's Glibc module must own the system types. */
#include <sys/types.h>
#include <stdint.h>
#include <stddef.h>

#include <nghttp2/nghttp2.h>

/* Macros Swift cannot import, as constants. No logic here. */
static const size_t bw_NGHTTP2_CLIENT_MAGIC_LEN = NGHTTP2_CLIENT_MAGIC_LEN;

#endif
