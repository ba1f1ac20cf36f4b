// Uploads a folder to a Hub repo as one commit, through the Hub's commit API as huggingface_hub drives it:
//
//   1. POST /api/repos/create {"name", "organization", "type", "private"}      (409: it exists, fine)
//   2. POST /api/{t}s/{repo}/branch/{rev}                                     (a branch other than main; 409 fine)
//   3. POST /api/{t}s/{repo}/preupload/{rev} {"files": [{"path", "sample" (base64 of the first 512 bytes), "size"}]}
//        -> {"files": [{"path", "uploadMode": "lfs"|"regular", "shouldIgnore", "oid" (the remote file's)}]}
//      files whose remote oid equals ours (sha256 for LFS, git blob sha1 else) are left out: only changes upload
//   4. POST {endpoint}/{datasets/}{repo}.git/info/lfs/objects/batch  {"operation": "upload", "transfers":
//        ["basic", "multipart"], "objects": [{"oid", "size"}], "hash_algo": "sha256", "ref": {"name": rev}}
//      basic: PUT the bytes to actions.upload.href; multipart: PUT each chunk_size slice to header["00001"]...,
//      then POST {"oid", "parts": [{"partNumber", "etag"}]} to actions.upload.href; then POST actions.verify
//   5. POST /api/{t}s/{repo}/commit/{rev}  (application/x-ndjson) header, then {"key": "file"} (base64) and
//      {"key": "lfsFile"} lines -> {"commitOid", "commitUrl"}
#pragma once
#include <map>
#include <string>
#include <vector>

#include "hub/client.h"

namespace cotune::hub {

struct PushOptions {
  RepoType type = RepoType::model;
  std::string revision = "main";
  bool private_repo = false;           // for a repo created now
  std::string commit_message = "Upload with cotune";
  std::string commit_description;
  std::vector<std::string> exclude{".git/*", ".cache/*", "*.incomplete", "*.tmp"};  // globs on the folder's paths
  std::map<std::string, std::string> extra_files;  // path in repo -> local file (added to / replacing the folder's)
  std::map<std::string, std::string> contents;     // path in repo -> bytes (e.g. README.md)
};

struct PushResult {
  std::string commit;      // the new commit ("" when nothing changed)
  std::string commit_url;
  std::string repo_url;    // {endpoint}/{datasets/}{repo}
  int files_committed = 0, lfs_uploaded = 0, unchanged = 0;
  bool created_repo = false;
};

// An empty `dir` uploads only extra_files / contents.
PushResult push_folder(HubClient& hub, const std::string& dir, const std::string& repo_id, const PushOptions& o);

std::string git_blob_sha1_file(const std::string& path);
std::string sha256_file_hex(const std::string& path);
std::string base64_encode(std::string_view bytes);

}  // namespace cotune::hub
