// Proxies ws://gateway/ws/:symbol to the engine's /ws/:symbol (with the internal key), so the
// frontend streams through the gateway; each side's close closes the other.
import type { Server } from "node:http";

import WebSocket, { WebSocketServer } from "ws";

export function attachStreamProxy(server: Server, mlServiceUrl: string, apiKey?: string): void {
  const wss = new WebSocketServer({ noServer: true });
  const upstreamBase = mlServiceUrl.replace(/^http/, "ws");

  server.on("upgrade", (req, socket, head) => {
    const url = new URL(req.url ?? "/", "http://gateway");
    const match = /^\/ws\/([A-Za-z0-9._-]+)$/.exec(url.pathname);
    if (!match) {
      socket.destroy();
      return;
    }
    wss.handleUpgrade(req, socket, head, (client) => {
      const upstream = new WebSocket(`${upstreamBase}/ws/${match[1]}${url.search}`, {
        headers: apiKey ? { "X-API-Key": apiKey } : {},
      });
      upstream.on("message", (data, isBinary) => {
        if (client.readyState === WebSocket.OPEN) client.send(data, { binary: isBinary });
      });
      upstream.on("close", (code, reason) => {
        if (client.readyState === WebSocket.OPEN) client.close(validCode(code), reason);
      });
      upstream.on("error", () => {
        if (client.readyState === WebSocket.OPEN) client.close(1011, "ML engine stream unavailable");
      });
      client.on("close", () => upstream.close());
    });
  });
}

// 1005/1006 describe the absence of a close frame and may not be sent.
const validCode = (code: number): number => (code === 1005 || code === 1006 ? 1011 : code);
