#include "docs.h"

#include <pthread.h>
#include <string.h>

#include "gateway/openapi.h"

#ifdef DAS_DOCS_UI
/* The bytes of swagger-ui-dist's files (cmake/Embed.cmake). */
extern const unsigned char das_swagger_ui_bundle_js[],
	das_swagger_ui_bundle_js_end[];
extern const unsigned char das_swagger_ui_css[], das_swagger_ui_css_end[];

/* Relative links: the page also works behind a proxy that adds a prefix. */
static const char page[] =
	"<!DOCTYPE html>\n"
	"<html lang=\"en\">\n"
	"<head>\n"
	"<meta charset=\"utf-8\">\n"
	"<meta name=\"viewport\" content=\"width=device-width, "
	"initial-scale=1\">\n"
	"<title>Device Assignment API</title>\n"
	"<link rel=\"icon\" href=\"data:,\">\n"
	"<link rel=\"stylesheet\" href=\"docs/swagger-ui.css\">\n"
	"</head>\n"
	"<body>\n"
	"<div id=\"swagger-ui\"></div>\n"
	"<script src=\"docs/swagger-ui-bundle.js\"></script>\n"
	"<script src=\"docs/docs.js\"></script>\n"
	"</body>\n"
	"</html>\n";

/* No inline script (CSP): the page starts swagger-ui from this file. */
static const char init_js[] =
	"window.addEventListener('load', function () {\n"
	"  window.ui = SwaggerUIBundle({\n"
	"    url: 'openapi.json',\n"
	"    dom_id: '#swagger-ui',\n"
	"    deepLinking: true,\n"
	"    validatorUrl: null,\n"
	"    docExpansion: 'list',\n"
	"    presets: [SwaggerUIBundle.presets.apis],\n"
	"    layout: 'BaseLayout'\n"
	"  });\n"
	"});\n";
#endif

static pthread_once_t doc_once = PTHREAD_ONCE_INIT;
static char *doc; /* built once, kept for the life of the process */
static size_t doc_len;

static void build_doc(void)
{
	doc = gw_openapi_json(&doc_len);
}

int gw_static_lookup(enum gw_route_rpc rpc, const char *file,
		     struct gw_static *out, int *is_oom)
{
	*is_oom = 0;
	switch (rpc) {
	case GW_ROUTE_OPENAPI:
		pthread_once(&doc_once, build_doc);
		if (!doc) {
			*is_oom = 1;
			return -1;
		}
		*out = (struct gw_static){"application/json; charset=utf-8",
					  doc, doc_len};
		return 0;
#ifdef DAS_DOCS_UI
	case GW_ROUTE_DOCS:
		*out = (struct gw_static){"text/html; charset=utf-8", page,
					  sizeof(page) - 1};
		return 0;
	case GW_ROUTE_DOCS_ASSET:
		if (strcmp(file, "docs.js") == 0) {
			*out = (struct gw_static){
				"text/javascript; charset=utf-8", init_js,
				sizeof(init_js) - 1};
			return 0;
		}
		if (strcmp(file, "swagger-ui-bundle.js") == 0) {
			*out = (struct gw_static){
				"text/javascript; charset=utf-8",
				das_swagger_ui_bundle_js,
				(size_t)(das_swagger_ui_bundle_js_end -
					 das_swagger_ui_bundle_js)};
			return 0;
		}
		if (strcmp(file, "swagger-ui.css") == 0) {
			*out = (struct gw_static){
				"text/css; charset=utf-8", das_swagger_ui_css,
				(size_t)(das_swagger_ui_css_end -
					 das_swagger_ui_css)};
			return 0;
		}
		return -1;
#endif
	default:
		return -1;
	}
}
