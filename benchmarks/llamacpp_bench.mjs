// llama.cpp's half of benchmarks/run_vs_llamacpp.sh: node-llama-cpp@3.21.1 (prebuilt CPU binaries).
//
//   node llamacpp_bench.mjs NODE_MODULES MODEL.gguf PROMPT DECODE THREADS VOCAB [SEED]
//
// Loads the file (mmap, as llama.cpp does by default), evaluates a prompt of PROMPT tokens (the ids
// bench_vs_llamacpp uses) and decodes DECODE tokens greedily, then prints
//   RESULT runtime=llama.cpp load_s=... prompt_tok_s=... decode_tok_s=... rss_mb=... peak_rss_mb=...
// (rss after load and peak from /proc/self/status, as actlens's half measures them).
import fs from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";

const [modules, modelPath, promptText, decodeText, threadsText, vocabText, seedText = "7"] = process.argv.slice(2);
if (!vocabText) {
    console.error("usage: node llamacpp_bench.mjs NODE_MODULES MODEL.gguf PROMPT DECODE THREADS VOCAB [SEED]");
    process.exit(2);
}
const statusMb = (field) => {
    const line = fs.readFileSync("/proc/self/status", "utf8").split("\n").find((l) => l.startsWith(field + ":"));
    return line ? Number(line.split(/\s+/)[1]) / 1024 : -1;
};
const { getLlama } = await import(pathToFileURL(path.join(modules, "node-llama-cpp", "dist", "index.js")).href);
const [promptLength, decode, threads, vocab, seed] = [promptText, decodeText, threadsText, vocabText, seedText].map(Number);
const llama = await getLlama({ gpu: false, build: "never", logLevel: "error" });
const t0 = performance.now();
const model = await llama.loadModel({ modelPath });
const loadS = (performance.now() - t0) / 1000;
const rssMb = statusMb("VmRSS");
const prompt = Array.from({ length: promptLength }, (_, i) => 3 + ((7919 * i + 104729 * seed) % (vocab - 3)));
const context = await model.createContext({ contextSize: promptLength + decode + 16, threads, batchSize: promptLength });
const sequence = context.getSequence();
let first = 0, last = 0, count = 0;
const t1 = performance.now();
for await (const token of sequence.evaluate(prompt, { temperature: 0 })) {
    last = performance.now();
    if (count++ === 0) first = last;
    if (count >= decode) break;
}
const promptS = (first - t1) / 1000, decodeS = (last - first) / 1000;
console.log(`RESULT runtime=llama.cpp load_s=${loadS.toFixed(3)} prompt_tok_s=${(promptLength / promptS).toFixed(2)} ` +
            `decode_tok_s=${((count - 1) / decodeS).toFixed(2)} rss_mb=${rssMb.toFixed(0)} ` +
            `peak_rss_mb=${statusMb("VmHWM").toFixed(0)}`);
await context.dispose();
await model.dispose();
await llama.dispose();
