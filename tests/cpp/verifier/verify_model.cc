// Runs TFLite's own flatbuffer verifier over model files, the check MediaPipe's model loader
// and FlatBufferModel::VerifyAndBuildFromBuffer run before building an interpreter:
//
//   verify_model FILE...
//
// prints one line per file, "ok FILE" or "refused FILE: <the verifier's messages>", and exits
// 0 when every file passes, 1 when any is refused, 2 on a usage or read error. Built against
// Debian's libtensorflow-lite-dev by build_verifier.sh (tests/cpp/test_cpp_verifier.py).
#include <cstdarg>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "tensorflow/lite/core/api/error_reporter.h"
#include "tensorflow/lite/core/tools/verifier.h"
#include "tensorflow/lite/kernels/register.h"

namespace {

// Collects the verifier's messages on one line.
class LineReporter : public tflite::ErrorReporter {
 public:
  int Report(const char* format, va_list args) override {
    char message[1024];
    int length = std::vsnprintf(message, sizeof(message), format, args);
    if (!text.empty()) text += " | ";
    for (const char* c = message; *c; ++c) text += (*c == '\n' || *c == '\r') ? ' ' : *c;
    return length;
  }
  std::string text;
};

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s MODEL.tflite...\n", argv[0]);
    return 2;
  }
  // The resolver a stock app uses: every builtin op at the versions this TFLite registers.
  tflite::ops::builtin::BuiltinOpResolver resolver;
  int status = 0;
  for (int i = 1; i < argc; ++i) {
    std::ifstream file(argv[i], std::ios::binary);
    if (!file) {
      std::fprintf(stderr, "error: cannot read %s\n", argv[i]);
      return 2;
    }
    std::vector<char> bytes((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
    LineReporter reporter;
    if (tflite::Verify(bytes.data(), bytes.size(), resolver, &reporter)) {
      std::printf("ok %s\n", argv[i]);
    } else {
      std::printf("refused %s: %s\n", argv[i], reporter.text.c_str());
      status = 1;
    }
  }
  return status;
}
