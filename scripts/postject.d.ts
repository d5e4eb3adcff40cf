// postject ships no types; this is the one call scripts/release.ts makes.
declare module "postject" {
  export function inject(file: string, resourceName: string, resourceData: Buffer, options: { sentinelFuse: string }): Promise<void>;
}
