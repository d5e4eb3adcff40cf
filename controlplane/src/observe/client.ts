// Reading a running node's /status from its host (the `status` command).
import type { Config } from "../config/mod.ts";
import { OperationError } from "../errors.ts";
import { localGet } from "../util/http.ts";
import type { ClusterStatus } from "./status.ts";

export async function fetchStatus(config: Config, timeoutMs = 10_000): Promise<ClusterStatus> {
  const port = config.observe.loopback_port;
  if (port === 0) {
    throw new OperationError("ERR_NODE_NOT_RUNNING", "observe.loopback_port is 0 in this config: the node shows no status on this host");
  }
  let r;
  try {
    r = await localGet(port, "/status", timeoutMs);
  } catch (cause) {
    throw new OperationError(
      "ERR_NODE_NOT_RUNNING",
      `no node answers on 127.0.0.1:${port} (observe.loopback_port): is it running with this config?`,
      { cause },
    );
  }
  if (r.status !== 200) throw new OperationError("ERR_NODE_NOT_RUNNING", `the node's /status answered ${r.status}: ${r.body.trim()}`);
  return JSON.parse(r.body) as ClusterStatus;
}
