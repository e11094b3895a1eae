/*
 * das-openapi FILE: writes the gateway's OpenAPI document (openapi.c) to
 * FILE, the build output next to the programs.
 */
#include <stdio.h>
#include <stdlib.h>

#include "gateway/openapi.h"

int main(int argc, char **argv)
{
	size_t len = 0;
	char *doc;
	FILE *f;

	if (argc != 2) {
		fprintf(stderr, "usage: das-openapi FILE\n");
		return 2;
	}
	doc = gw_openapi_json(&len);
	if (!doc) {
		fprintf(stderr, "das-openapi: cannot build the document\n");
		return 1;
	}
	f = fopen(argv[1], "w");
	if (!f || fwrite(doc, 1, len, f) != len || fputc('\n', f) == EOF ||
	    fclose(f) != 0) {
		fprintf(stderr, "das-openapi: cannot write %s\n", argv[1]);
		free(doc);
		return 1;
	}
	free(doc);
	return 0;
}
