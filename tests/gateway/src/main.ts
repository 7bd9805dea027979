// Starts the gateway: PORT (default 3000), ML_SERVICE_URL, INTERNAL_API_KEY.
import { createServer } from "node:http";

import { createApp } from "./app.js";
import { MLGatewayService } from "./ml-gateway.service.js";
import { attachStreamProxy } from "./ws-proxy.js";

const ml = new MLGatewayService();
const server = createServer(createApp(ml));
attachStreamProxy(server, ml.mlServiceUrl, process.env.INTERNAL_API_KEY);
const port = Number(process.env.PORT ?? 3000);
server.listen(port, "127.0.0.1", () => {
  console.log(`gateway listening on ${port}, ML engine ${ml.mlServiceUrl}`);
});
