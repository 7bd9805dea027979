// Types of the ML engine's API: REST shapes are generated from its OpenAPI document
// (types/ml-engine.d.ts, `make types`); the WebSocket messages are composed from them.
import type { components, operations } from "../../../types/ml-engine.js";

type Schemas = components["schemas"];
export type PredictionDto = Schemas["PredictionResponse"];
export type SignalDto = Schemas["SignalResponse"];
export type IndicatorsDto = Schemas["IndicatorsResponse"];
export type HistoryDto = Schemas["HistoryResponse"];
export type HealthDto = Schemas["HealthReport"];
export type ErrorDto = Schemas["ErrorBody"];

export type PredictQuery = NonNullable<operations["ApiPredictSymbolPredict"]["parameters"]["query"]>;
export type SignalsQuery = NonNullable<operations["ApiSignalsSymbolSignals"]["parameters"]["query"]>;
export type IndicatorsQuery = NonNullable<
  operations["ApiIndicatorsSymbolIndicators"]["parameters"]["query"]
>;
export type HistoryQuery = NonNullable<operations["ApiHistorySymbolHistory"]["parameters"]["query"]>;

/** What WS /ws/{symbol} sends. */
export type StreamMessage =
  | {
      type: "prediction";
      symbol: string;
      timeframe: string;
      bar_time: string;
      prediction: PredictionDto;
      signal: SignalDto;
    }
  | { type: "error"; symbol: string; timeframe: string; status: number; error: ErrorDto }
  | { type: "heartbeat"; time: number };
