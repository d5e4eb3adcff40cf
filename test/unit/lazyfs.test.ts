import assert from "node:assert/strict";
import { test } from "node:test";
import { mountPoints } from "../../localtailnet/lazyfs.ts";

test("lazyfs: mount points from mountinfo, with its escapes undone", () => {
  const mountinfo =
    "22 1 0:21 / / rw,relatime shared:1 - ext4 /dev/root rw\n" +
    "90 22 0:50 / /tmp/a\\040b/store rw,nosuid,nodev,relatime shared:40 - fuse.lazyfs /tmp/backing rw,user_id=0,group_id=0\n" +
    "91 22 0:51 / /tmp/tab\\011and\\134slash rw - tmpfs tmpfs rw\n";
  assert.deepEqual(mountPoints(mountinfo), ["/", "/tmp/a b/store", "/tmp/tab\tand\\slash"]);
});
