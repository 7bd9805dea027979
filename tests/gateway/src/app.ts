// The gateway's ML routes and error handler, shaped like the platform's routes/ml.routes.ts.
import express, { type NextFunction, type Request, type Response } from "express";

import {
  MLGatewayService,
  MLRequestError,
  MLServiceUnavailableError,
} from "./ml-gateway.service.js";

export function createApp(ml: MLGatewayService): express.Express {
  const app = express();
  const router = express.Router();
  const query = (req: Request): Record<string, string> =>
    Object.fromEntries(
      Object.entries(req.query).filter((e): e is [string, string] => typeof e[1] === "string"),
    );

  // Every route: symbol from the path, query as given, the engine's body as the answer.
  const proxy = (path: string, call: (symbol: string, q: Record<string, string>) => Promise<unknown>) =>
    router.get(path, async (req: Request<{ symbol: string }>, res, next) => {
      try {
        res.json(await call(req.params.symbol, query(req)));
      } catch (error) {
        next(error);
      }
    });
  proxy("/predict/:symbol", (symbol, q) => ml.predict(symbol, q));
  proxy("/signals/:symbol", (symbol, q) => ml.signals(symbol, q));
  proxy("/indicators/:symbol", (symbol, q) => ml.indicators(symbol, q));
  proxy("/history/:symbol", (symbol, { limit, ...rest }) =>
    ml.history(symbol, { ...rest, limit: limit ? Number(limit) : undefined }),
  );
  app.get("/healthz", (_req, res) => {
    res.json({ status: "ok" });
  });
  app.use("/api/ml", router);
  app.use(errorHandler);
  return app;
}

export function errorHandler(error: Error, _req: Request, res: Response, _next: NextFunction): void {
  if (error instanceof MLServiceUnavailableError) {
    res.status(503).json({ error: "ML service unavailable", message: error.message });
    return;
  }
  if (error instanceof MLRequestError) {
    res.status(error.status).json(error.body);
    return;
  }
  res.status(500).json({ error: "Internal server error", message: "see the gateway log" });
}
