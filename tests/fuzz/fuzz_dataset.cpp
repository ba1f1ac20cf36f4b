// libFuzzer target: a dataset file (JSON array or JSON Lines) streamed by RecordSource with the medical-o1
// fields, bad records skipped (the --on-bad-record skip path; the error path stops at the first one).
#include "base/error.h"
#include "data/source.h"
#include "fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = cotune::fuzz::write_input("data.jsonl", data, size);
  for (auto policy : {cotune::data::OnBadRecord::skip, cotune::data::OnBadRecord::error}) {
    try {
      cotune::data::RecordSource src(path, {"Question", "Complex_CoT", "Response"}, policy);
      cotune::data::Record r;
      while (src.next(r)) {
      }
    } catch (const cotune::Error&) {
    }
  }
  return 0;
}
