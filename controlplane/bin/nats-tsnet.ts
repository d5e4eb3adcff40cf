#!/usr/bin/env node
import { main } from "../src/cli/main.ts";

// Exit explicitly: after a fatal error, children's pipes would keep the
// event loop (and so this process) alive; the children follow us out
// through their parent-death signal. (No top-level await: the release file
// bundles this entry as CommonJS.)
void main(process.argv.slice(2)).then((code) => process.exit(code));
