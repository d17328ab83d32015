/* Function attributes of the engine's per-request path.  Private to src/lib. */
#ifndef FDH_ATTR_H
#define FDH_ATTR_H

/*
 * Every object is built with -fstack-protector-strong, which gives a
 * function a canary as soon as it takes the address of any local.  The
 * functions every request runs through keep no buffer that their own code
 * writes on their stack: only scalars, iovecs filled at fixed indexes, and
 * what the kernel or libc fills within a size it is given (a timespec, the
 * control data of a recvmsg()).  Texts for error answers are made in cold
 * helpers with buffers of their own, which keep their canaries.  A canary
 * in these would guard against an overrun nothing in them can make, at a
 * load, a store and a compare per call; this marks them, and a function
 * that gains a buffer of its own must lose the mark.
 */
#define FDH_NO_CANARY __attribute__((no_stack_protector))

#endif
