// The gateway's client for the ML engine, as in the platform's MLGatewayService: axios with a
// 30 s timeout; an engine that cannot answer becomes MLServiceUnavailableError (HTTP 503).
import axios, { AxiosError, type AxiosInstance } from "axios";

import type {
  ErrorDto,
  HealthDto,
  HistoryDto,
  HistoryQuery,
  IndicatorsDto,
  IndicatorsQuery,
  PredictionDto,
  PredictQuery,
  SignalDto,
  SignalsQuery,
} from "./ml-engine.js";

export const ML_TIMEOUT_MS = 30_000;

/** The engine answered with an error the caller should see (400, 404, 422, ...). */
export class MLRequestError extends Error {
  constructor(
    readonly status: number,
    readonly body: ErrorDto,
  ) {
    super(body.message);
  }
}

/** The engine is down, timed out, or says one of its dependencies is (503). */
export class MLServiceUnavailableError extends Error {}

export class MLGatewayService {
  private readonly http: AxiosInstance;

  constructor(
    readonly mlServiceUrl: string = process.env.ML_SERVICE_URL ?? "http://localhost:8080",
    apiKey: string | undefined = process.env.INTERNAL_API_KEY,
  ) {
    this.http = axios.create({
      baseURL: mlServiceUrl,
      timeout: ML_TIMEOUT_MS,
      headers: apiKey ? { "X-API-Key": apiKey } : {},
    });
  }

  predict(symbol: string, query: PredictQuery = {}): Promise<PredictionDto> {
    return this.get(`/api/predict/${encodeURIComponent(symbol)}`, query);
  }

  signals(symbol: string, query: SignalsQuery = {}): Promise<SignalDto> {
    return this.get(`/api/signals/${encodeURIComponent(symbol)}`, query);
  }

  indicators(symbol: string, query: IndicatorsQuery = {}): Promise<IndicatorsDto> {
    return this.get(`/api/indicators/${encodeURIComponent(symbol)}`, query);
  }

  history(symbol: string, query: HistoryQuery = {}): Promise<HistoryDto> {
    return this.get(`/api/history/${encodeURIComponent(symbol)}`, query);
  }

  health(): Promise<HealthDto> {
    return this.get("/health", {});
  }

  private async get<T>(path: string, params: object): Promise<T> {
    try {
      const response = await this.http.get<T>(path, { params });
      return response.data;
    } catch (error) {
      throw translate(error);
    }
  }
}

function translate(error: unknown): Error {
  if (!(error instanceof AxiosError)) return error instanceof Error ? error : new Error(String(error));
  const status = error.response?.status;
  const body = error.response?.data as Partial<ErrorDto> | undefined;
  if (status === undefined) {
    // No answer at all: refused, reset, or the 30 s timeout.
    return new MLServiceUnavailableError(`ML engine unreachable: ${error.code ?? error.message}`);
  }
  if (status === 503 || status >= 500) {
    return new MLServiceUnavailableError(body?.message ?? `ML engine answered ${status}`);
  }
  return new MLRequestError(status, {
    error: body?.error ?? "Request failed",
    message: body?.message ?? error.message,
    field: body?.field ?? null,
  });
}
