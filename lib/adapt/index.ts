export * from "./adapters.js";
export * from "./fewshot.js";
export * from "./lora.js";
export * from "./lora-fewshot.js";
export * from "./patient.js";
export * from "./shots.js";
export * from "./summary.js";
