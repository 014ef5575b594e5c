// Import of released PyTorch checkpoints (`torch.save` zips of {epoch, step, name, state_dict,
// optimizer}). Nothing LibTorch reads is unchecked:
//   1. the ZIP is read by vilref's own reader (native/torch_zip.h): directory, local headers,
//      sizes capped before anything is inflated (maxUncompressedBytes, default 4 × the file's
//      size + 1 MiB), every entry's CRC-32;
//   2. the pickle is dry-run (native/pickle_check.h) with LibTorch 1.13's semantics: stack
//      discipline, nesting depth, allowed globals (tensors, storages, plain containers; nothing
//      executes), and every storage and tensor view it describes;
//   3. every storage is checked against its record (numel × item size = the record's bytes) and
//      every tensor against its storage (offset, sizes and strides ≥ 0, the view inside the storage,
//      its element count within the storage's and all views together within the cap);
//   4. only then does LibTorch's restricted Unpickler build the tensors, over copies of the checked
//      records (storages are mapped to the CPU), and each tensor is checked again before it is
//      handed to JavaScript.
// Errors name the file and, where one is at fault, the entry or the tensor. (The safetensors
// format is read and written in TypeScript: lib/checkpoint/safetensors.ts.)
#pragma once

#include <napi.h>

namespace vilref {

// importTorchCheckpoint(bytes: Uint8Array, name: string, options?: { maxUncompressedBytes?: number })
//   → Promise<{ tensors: {name: TensorData}, metadata: { epoch?, step?, name? } }>, keys without the
//   `module.` prefix, `bert.pooler.*` dropped.
void InitCheckpoint(Napi::Env env, Napi::Object exports);

}  // namespace vilref
