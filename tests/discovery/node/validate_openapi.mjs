// Validates an OpenAPI document (file or URL) with @apidevtools/swagger-parser
// (schema + semantic checks of OpenAPI 3.0) and prints the verdict. A URL is
// fetched here (the parser refuses loopback URLs) and must answer 200 JSON.
//   node validate_openapi.mjs SOURCE...
import SwaggerParser from "@apidevtools/swagger-parser";

let failed = false;
for (const source of process.argv.slice(2)) {
  try {
    let input = source;
    if (/^https?:/.test(source)) {
      const r = await fetch(source);
      const type = r.headers.get("content-type") || "";
      if (r.status !== 200 || !type.startsWith("application/json"))
        throw new Error(`GET answered ${r.status} ${type}`);
      input = await r.json();
    }
    const api = await SwaggerParser.validate(input);
    const ops = Object.values(api.paths)
      .reduce((n, item) => n + Object.keys(item).length, 0);
    console.log(`swagger-parser: ${source} is a valid OpenAPI ${api.openapi} ` +
      `document (${Object.keys(api.paths).length} paths, ${ops} operations)`);
  } catch (e) {
    console.log(`swagger-parser: ${source} is NOT valid: ${e.message}`);
    failed = true;
  }
}
process.exit(failed ? 1 : 0);
