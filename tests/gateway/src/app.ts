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

  router.get("/predict/:symbol", async (req, res, next) => {
    try {
      res.json(await ml.predict(req.params.symbol, query(req)));
    } catch (error) {
      next(error);
    }
  });
  router.get("/signals/:symbol", async (req, res, next) => {
    try {
      res.json(await ml.signals(req.params.symbol, query(req)));
    } catch (error) {
      next(error);
    }
  });
  router.get("/indicators/:symbol", async (req, res, next) => {
    try {
      res.json(await ml.indicators(req.params.symbol, query(req)));
    } catch (error) {
      next(error);
    }
  });
  router.get("/history/:symbol", async (req, res, next) => {
    try {
      const { limit, ...rest } = query(req);
      res.json(await ml.history(req.params.symbol, { ...rest, limit: limit ? Number(limit) : undefined }));
    } catch (error) {
      next(error);
    }
  });
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
