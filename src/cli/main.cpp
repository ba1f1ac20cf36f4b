// cotune: one native program that fine-tunes, runs, evaluates and exports reasoning LLMs.
#include <algorithm>
#include <cstdio>
#include <exception>
#include <new>
#include <stdexcept>

#include "base/error.h"
#include "base/log.h"
#include "cli/command.h"

namespace cotune::cli {
std::vector<Command>& commands() {
  static std::vector<Command> all;
  return all;
}
}  // namespace cotune::cli

namespace {
int out_of_memory() {
  cotune::log::error("out of memory: the input asks for more memory than this machine can give (a size in a "
                     "config, tokenizer, checkpoint or flag far too large?); rerun with -v to see how far it got");
  return 1;
}
}  // namespace

int main(int argc, char** argv) {
  using namespace cotune;
  CLI::App app{"cotune: LoRA / QLoRA fine-tuning of reasoning LLMs (Qwen2 family), natively in C++/CUDA"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "cotune 0.1.0");
  bool verbose = false, quiet = false;
  app.add_flag("-v,--verbose", verbose, "Log debug messages");
  app.add_flag("-q,--quiet", quiet, "Log only errors");
  app.footer(
      "Pipeline (DESIGN.md): init-model / inspect -> tokenize -> data -> train -> generate / eval -> merge / export.\n"
      "Run `cotune SUBCOMMAND --help` for a subcommand's options.");
  auto& cmds = cli::commands();
  std::sort(cmds.begin(), cmds.end(), [](const cli::Command& a, const cli::Command& b) { return a.order < b.order; });
  for (auto& c : cmds) {
    CLI::App* sub = app.add_subcommand(c.name, c.help);
    c.setup(*sub);
  }
  app.parse_complete_callback([&] {
    if (verbose) log::set_level(log::Level::debug);
    if (quiet) log::set_level(log::Level::error);
  });
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {  // also CLI::RuntimeError: a subcommand's chosen exit status
    return app.exit(e);
  } catch (const Error& e) {
    log::error("{}", e.what());
    return 1;
  } catch (const std::bad_alloc&) {
    // Sizes read from files are bounded where they are parsed; this is the last line of defence.
    return out_of_memory();
  } catch (const std::length_error&) {  // a container asked for more than it can ever hold
    return out_of_memory();
  } catch (const std::exception& e) {
    log::error("{}", e.what());
    return 1;
  }
  return 0;
}
