#include "hostport.h"

#include <netdb.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

int das_hostport_resolve(const char *addr, const char *label,
			 struct addrinfo **res, char *err, size_t err_size)
{
	char host[256];
	const char *colon, *port, *hs = addr;
	size_t hl;
	struct addrinfo hints;
	int rc;

	if (addr[0] == '[') {
		const char *close = strchr(addr, ']');
		if (!close || close[1] != ':')
			goto bad;
		hs = addr + 1;
		hl = (size_t)(close - hs);
		port = close + 2;
	} else {
		colon = strrchr(addr, ':');
		if (!colon)
			goto bad;
		hl = (size_t)(colon - addr);
		port = colon + 1;
	}
	if (hl == 0 || hl >= sizeof(host) || !*port)
		goto bad;
	memcpy(host, hs, hl);
	host[hl] = '\0';
	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICSERV | AI_PASSIVE;
	rc = getaddrinfo(host, port, &hints, res);
	if (rc != 0 || !*res) {
		snprintf(err, err_size, "cannot resolve %s%s: %s", label, addr,
			 gai_strerror(rc));
		return -1;
	}
	return 0;
bad:
	snprintf(err, err_size, "%s%s: expected HOST:PORT", label, addr);
	return -1;
}
