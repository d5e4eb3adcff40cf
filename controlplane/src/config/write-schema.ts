// Regenerates docs/config.schema.json (test/unit/config.test.ts fails while it is stale):
//   node controlplane/src/config/write-schema.ts

import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { configJsonSchema } from "./schema.ts";

export const SCHEMA_FILE = join(import.meta.dirname, "../../../docs/config.schema.json");

export function schemaFileText(): string {
  return `${JSON.stringify(configJsonSchema(), null, 2)}\n`;
}

if (import.meta.main) {
  writeFileSync(SCHEMA_FILE, schemaFileText());
  console.log(`wrote ${SCHEMA_FILE}`);
}
