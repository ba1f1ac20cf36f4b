// Which data file a command reads, the same way in train, eval and data: --data is a JSON / JSONL file, a folder,
// or a Hugging Face dataset (org/name in the cache); --data-files names one file inside a folder or dataset. A
// folder or dataset holding several data files without --data-files is an error listing them: cotune never
// mixes files (e.g. a dataset's English and Chinese versions) by accident.
#pragma once
#include <string>
#include <vector>

namespace cotune::cli {

// The path to read: `data` itself (a file), `data`/`data_files`, or the one data file of the folder. A folder
// without data files is returned as is (the reader then names what it found).
std::string resolve_data_path(const std::string& data, const std::string& data_files);

// Data files of a folder (json, jsonl, parquet, csv, tsv, arrow; the folder and its subfolders, one level
// deep as in Hub dataset repos' data/), as paths relative to it, sorted.
std::vector<std::string> data_files_in(const std::string& folder);

}  // namespace cotune::cli
