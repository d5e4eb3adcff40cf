// Counters of the control plane's own events (auth callout decisions,
// route reconcile events), for /metrics. Label values come from fixed sets
// chosen by the code that counts (never a client's text), so the table
// stays small.
export type Labels = Record<string, string>;

export class Counters {
  private readonly values = new Map<string, { name: string; labels: Labels; value: number }>();

  inc(name: string, labels: Labels = {}, by = 1): void {
    const key = name + JSON.stringify(Object.entries(labels).sort());
    const e = this.values.get(key);
    if (e) e.value += by;
    else this.values.set(key, { name, labels, value: by });
  }

  /** Every counter of `name`, with its labels. */
  of(name: string): Array<{ labels: Labels; value: number }> {
    return [...this.values.values()].filter((e) => e.name === name);
  }
}
