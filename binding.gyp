# node-gyp build of the same sources as CMakeLists.txt, used by `npm run prebuild` (prebuildify).
# Paths and flags come from the same locator as the cmake-js build: lib/build/libtorch.js.
{
  "variables": {
    "torch_libdir": "<!(node lib/build/libtorch.js --libdir)",
    "torch_flavour": "<!(node lib/build/libtorch.js --flavour)",
    # The JPEG fast path (native/jpeg.cc) when TurboJPEG's header is installed (libturbojpeg0-dev).
    "turbojpeg": "<!(node -p \"require('fs').existsSync('/usr/include/turbojpeg.h') ? 1 : 0\")",
  },
  "targets": [
    {
      "target_name": "vilref",
      "sources": ["<!@(node lib/build/addon.js --sources)"],
      "include_dirs": [
        "<!(node -p \"require('node-addon-api').include_dir\")",
        "<!@(node lib/build/libtorch.js --include)",
      ],
      "defines": [
        "NAPI_VERSION=8",
        "NODE_ADDON_API_CPP_EXCEPTIONS",
        "NODE_ADDON_API_CPP_EXCEPTIONS_ALL",
        "NODE_ADDON_API_DISABLE_DEPRECATED",
        "VILREF_SOURCE_HASH=\"<!(node lib/build/addon.js --hash)\"",
        "VILREF_FLAVOUR=\"<(torch_flavour)\"",
        "<!@(node lib/build/libtorch.js --defines)",
      ],
      "conditions": [
        ["turbojpeg==1", {"defines": ["VILREF_WITH_TURBOJPEG"], "libraries": ["-lturbojpeg"]}],
      ],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti", "-std=gnu++17", "-std=gnu++20"],
      "cflags_cc": ["-std=c++17", "-fexceptions", "-frtti", "-O2", "-fvisibility=hidden", "<!@(node lib/build/libtorch.js --cflags)"],
      # --no-as-needed: libtorch_cuda registers CUDA kernels at load time and must stay linked.
      "libraries": ["-L<(torch_libdir)", "-Wl,--no-as-needed", "<!@(node lib/build/libtorch.js --libs)", "-Wl,--as-needed"],
      "ldflags": [
        # A prebuild finds LibTorch through a link the loader makes beside it, then at the
        # build machine's path.
        "-Wl,-rpath,'$$ORIGIN/libtorch-<(torch_flavour)'",
        "-Wl,-rpath,<(torch_libdir)",
      ],
    }
  ]
}
