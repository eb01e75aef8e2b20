import { execFileSync } from "node:child_process";

/** Resident memory (KiB) of the workerd processes this process started; NaN where `ps` is unavailable. */
export function workerdRssKiB(): number {
  try {
    const out = execFileSync("ps", ["-o", "rss=,comm=", "--ppid", String(process.pid)], { encoding: "utf8" });
    return out
      .split("\n")
      .filter((line) => line.includes("workerd"))
      .reduce((sum, line) => sum + Number(line.trim().split(/\s+/)[0]), 0);
  } catch {
    return Number.NaN;
  }
}
