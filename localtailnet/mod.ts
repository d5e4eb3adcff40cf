export { LocalTailnet, CLI, withTimeout, type LabNode, type LabProxy, type NodeOptions } from "./lab.ts";
export { Headscale, defaultPolicy, tailnetEnv, CLUSTER_TAG, DEV_USER, BASE_DOMAIN, CAPABILITY, type AuthKeyOptions } from "./headscale.ts";
export {
  NetLab,
  namespacesUnavailable,
  removeStaleLabs,
  labNamespaces,
  namespaceMemory,
  namespaceProcessMemory,
  type Host,
  type ProcessMemory,
} from "./netns.ts";
export { testReleaseFile } from "./release.ts";
export { LazyFs } from "./lazyfs.ts";
