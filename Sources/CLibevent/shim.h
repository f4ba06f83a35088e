#ifndef BREAKWATER_CLIBEVENT_SHIM_H
#define BREAKWATER_CLIBEVENT_SHIM_H

/* libc first: Swift's Glibc module must own fd_set before libevent sees it. */
#include <sys/types.h>
#include <sys/select.h>
#include <sys/time.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <netdb.h>
#include <stdint.h>

/* accept4 is declared only under _GNU_SOURCE, which Swift's Glibc module does not define. */
int accept4(int fd, struct sockaddr *addr, socklen_t *addrlen, int flags);

#include <sys/syscall.h>
#include <unistd.h>

/* recv and send without libc's cancellation points: in a process with several threads, glibc's
   recv and send switch asynchronous cancellation on and off around every call, and Breakwater
   cancels no thread. syscall() is variadic, hence these wrappers. */
static inline long breakwater_recv(int fd, void *buffer, size_t length) {
    return syscall(SYS_recvfrom, fd, buffer, length, 0, (void *)0, (void *)0);
}
static inline long breakwater_send(int fd, const void *buffer, size_t length, int flags) {
    return syscall(SYS_sendto, fd, buffer, length, flags, (void *)0, 0);
}

#include <sys/eventfd.h>

/* A non-blocking, close-on-exec eventfd: how other threads wake a worker's loop. */
static inline int breakwater_eventfd(void) {
    return eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
}

#include <event2/event.h>
#include <event2/buffer.h>
#include <event2/util.h>

#endif
