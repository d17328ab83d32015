/* sd_notify: one datagram per state change to $NOTIFY_SOCKET. */
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "log.h"
#include "notify.h"

static int notify_fd = -1;
static struct sockaddr_un notify_addr;
static socklen_t notify_len;

void
notify_init(void)
{
	const char *path = getenv("NOTIFY_SOCKET");
	size_t len;

	if (path == NULL || *path == '\0')
		goto out;
	len = strlen(path);
	if ((path[0] != '/' && path[0] != '@') || len >= sizeof(notify_addr.sun_path)) {
		log_warn("NOTIFY_SOCKET=%s: not a unix socket address; not notifying", path);
		goto out;
	}
	memset(&notify_addr, 0, sizeof(notify_addr));
	notify_addr.sun_family = AF_UNIX;
	memcpy(notify_addr.sun_path, path, len);
	if (path[0] == '@')
		notify_addr.sun_path[0] = '\0';	/* abstract */
	notify_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len +
	    (path[0] == '@' ? 0 : 1));
	notify_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (notify_fd == -1)
		log_warn("NOTIFY_SOCKET: socket: %s; not notifying", strerror(errno));
out:
	unsetenv("NOTIFY_SOCKET");
}

void
notify_send(const char *state)
{
	ssize_t n;

	if (notify_fd == -1)
		return;
	do
		n = sendto(notify_fd, state, strlen(state), MSG_NOSIGNAL | MSG_DONTWAIT,
		    (const struct sockaddr *)&notify_addr, notify_len);
	while (n == -1 && errno == EINTR);
	if (n == -1)
		log_warn("NOTIFY_SOCKET: sending %s: %s", state, strerror(errno));
}

void
notify_free(void)
{
	if (notify_fd != -1) {
		close(notify_fd);
		notify_fd = -1;
	}
}
