#ifndef BREAKWATER_CHIREDIS_SHIM_H
#define BREAKWATER_CHIREDIS_SHIM_H

/* libc first: Swift's Glibc module must own fd_set and friends before hiredis and libevent see them. */
#include <sys/types.h>
#include <sys/select.h>
#include <sys/time.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <netdb.h>
#include <stdint.h>

#include <hiredis/hiredis.h>
#include <hiredis/async.h>
#include <hiredis/adapters/libevent.h>

#endif
