/* fdhttp: the whole public API. */
#ifndef FDHTTP_FDHTTP_H
#define FDHTTP_FDHTTP_H

#include <fdhttp/common.h>
#include <fdhttp/service.h>
#include <fdhttp/client.h>

#endif
