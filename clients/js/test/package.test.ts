// The package as published: its version is the project's, and what it exports.
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import * as client from "../src/index.js";

const here = new URL("..", import.meta.url);

describe("the package", () => {
  it("has the project's version (pyproject.toml)", () => {
    const manifest = JSON.parse(readFileSync(new URL("package.json", here), "utf8")) as { version: string; name: string };
    const pyproject = readFileSync(new URL("../../pyproject.toml", here), "utf8");
    const version = /^version\s*=\s*"([^"]+)"/m.exec(pyproject)?.[1];
    expect(version).toBeTruthy();
    expect(manifest.version).toBe(version);
    expect(manifest.name).toBe("@llm-stream-broadcaster/client");
  });

  it("has no runtime dependency, and ai only as an optional peer", () => {
    const manifest = JSON.parse(readFileSync(new URL("package.json", here), "utf8")) as Record<string, unknown>;
    expect(manifest.dependencies).toBeUndefined();
    expect(Object.keys(manifest.peerDependencies as object)).toEqual(["ai"]);
    expect((manifest.peerDependenciesMeta as Record<string, { optional: boolean }>).ai?.optional).toBe(true);
  });

  it("exports the transport, the followers and the helpers", () => {
    expect(typeof client.BroadcasterChatTransport).toBe("function");
    expect(typeof client.followStream).toBe("function");
    expect(typeof client.followEvents).toBe("function");
    expect(typeof client.inputHash).toBe("function");
    expect(typeof client.approvalBinding).toBe("function");
  });
});
