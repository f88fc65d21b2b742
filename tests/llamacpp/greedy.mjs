// Greedy continuation of a prompt by llama.cpp (node-llama-cpp, prebuilt CPU binaries), printed as
// one JSON line {"prompt": [...ids], "generated": [...ids]}; tests/test_llamacpp.cpp compares it with
// actlens's greedy generation on the same GGUF file.
//
//   node greedy.mjs NODE_MODULES MODEL.gguf COUNT ID [ID ...]
//
// The prompt is given as token ids (so that both runtimes start from the same ids, whatever their
// tokenizers do). Greedy: temperature 0; one thread, so that the run is deterministic.
import path from "node:path";
import { pathToFileURL } from "node:url";

const [modules, modelPath, countText, ...idTexts] = process.argv.slice(2);
if (!modules || !modelPath || !countText || idTexts.length === 0) {
    console.error("usage: node greedy.mjs NODE_MODULES MODEL.gguf COUNT ID [ID ...]");
    process.exit(2);
}
const entry = pathToFileURL(path.join(modules, "node-llama-cpp", "dist", "index.js")).href;
const { getLlama } = await import(entry);
const llama = await getLlama({ gpu: false, build: "never", logLevel: "error" });
const model = await llama.loadModel({ modelPath });
const context = await model.createContext({ contextSize: 256, threads: 1, batchSize: 256 });
const sequence = context.getSequence();
const prompt = idTexts.map(Number);
const count = Number(countText);
const generated = [];
for await (const token of sequence.evaluate(prompt, { temperature: 0 })) {
    generated.push(token);
    if (generated.length >= count) break;
}
console.log(JSON.stringify({ prompt, generated }));
await context.dispose();
await model.dispose();
await llama.dispose();
