// libFuzzer target: a dataset file streamed by RecordSource with the medical-o1 fields, bad records skipped
// (the --on-bad-record skip path) and not (the error path stops at the first one). The reader is chosen by the
// file's extension: data.jsonl (JSON array or JSON Lines), or data.parquet / data.csv for the fuzz_parquet and
// fuzz_csv builds of this file.
#ifndef COTUNE_FUZZ_DATA_FILE
#define COTUNE_FUZZ_DATA_FILE "data.jsonl"
#endif
#include "base/error.h"
#include "data/source.h"
#include "fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = cotune::fuzz::write_input(COTUNE_FUZZ_DATA_FILE, data, size);
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
