// The V8 flags of a nats-tsnet process, in one place: for the release file's
// single-executable config (execArgv) and for the lab, which starts a
// checkout's nodes with them (localtailnet/lab.ts) so that it measures what
// ships. Each makes an idle node's control plane lighter; it does little work
// and none of it hot (the auth callout, its busiest path, answers some 2000
// connections per CPU-second with them, against some 2800 without):
//   --max-semi-space-size=1  a young generation of at most 1 MiB per
//     semi-space: V8 grows it to 8 MiB in start-up's burst of allocation and
//     keeps it, some 13 MiB of empty heap in an idle node
//   --max-opt=1              the interpreter and Sparkplug only, no Maglev or
//     TurboFan: their compiler code and zones cost some 9 MiB resident
//   --optimize-for-size      V8's own trade of speed for memory (smaller
//     heap growing steps): some 3 MiB
export const V8_FLAGS: readonly string[] = ["--max-semi-space-size=1", "--max-opt=1", "--optimize-for-size"];
