export * from "./finetuner.js";
export * from "./train.js";
