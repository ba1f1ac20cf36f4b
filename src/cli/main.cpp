// cotune: one native program that fine-tunes, runs, evaluates and exports reasoning LLMs.
#include <algorithm>
#include <cstdio>
#include <exception>
#include <new>
#include <stdexcept>

#include "base/error.h"
#include "base/log.h"
#include "cli/command.h"
#include "cli/did_you_mean.h"

namespace cotune::cli {
std::vector<Command>& commands() {
  static std::vector<Command> all;
  return all;
}

namespace {

// `--learning_rate` is `--learning-rate`: HfArgumentParser accepts both, so TRL users type either. Only the
// flag's name is rewritten (up to '='), never a value.
std::vector<std::string> normalise_flag_spelling(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  for (auto& a : args) {
    if (a == "--") break;
    if (!a.starts_with("--")) continue;
    const size_t end = std::min(a.find('='), a.size());
    std::replace(a.begin() + 2, a.begin() + static_cast<std::ptrdiff_t>(end), '_', '-');
  }
  return args;
}

std::vector<std::string> subcommand_names(const CLI::App& app) {
  std::vector<std::string> names;
  for (const CLI::App* s : app.get_subcommands([](const CLI::App*) { return true; })) names.push_back(s->get_name());
  return names;
}

// The first word that is not a flag of `app` must name one of its subcommands; otherwise CLI11 would answer
// "A subcommand is required". Descends into nested subcommands (`data stats`). Returns an error text or "".
std::string check_subcommand_words(const CLI::App& app, const std::vector<std::string>& args, size_t i,
                                   const std::string& path) {
  const auto names = subcommand_names(app);
  if (names.empty()) return "";
  for (; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a.starts_with("-")) {
      if (a == "--help" || a == "-h" || a == "--version") return "";
      continue;  // the main program's flags take no values
    }
    if (std::find(names.begin(), names.end(), a) == names.end())
      return fmt::format("'{}' is not a {}command of {}{}; the {}commands are: {}", a, path.empty() ? "" : "sub",
                         path.empty() ? "cotune" : "cotune " + path, did_you_mean(a, names), path.empty() ? "" : "sub",
                         fmt::join(names, ", "));
    const CLI::App* sub = app.get_subcommand(a);
    return check_subcommand_words(*sub, args, i + 1, path.empty() ? a : path + " " + a);
  }
  return "";
}

// For "The following arguments were not expected": the flags of the deepest subcommand that was chosen.
std::string suggest_flags(const CLI::App& app, const std::vector<std::string>& extras) {
  const CLI::App* deepest = &app;
  for (;;) {
    auto chosen = deepest->get_subcommands();
    if (chosen.empty()) break;
    deepest = chosen.front();
  }
  std::vector<std::string> flags;
  for (const CLI::Option* o : deepest->get_options())
    for (const auto& n : o->get_lnames()) flags.push_back("--" + n);
  std::string out;
  for (const auto& e : extras) {
    if (!e.starts_with("-")) continue;
    const std::string name = e.substr(0, e.find('='));
    const std::string hint = did_you_mean(name, flags);
    out += fmt::format("\n{}: unknown flag of `{}`{}", name, deepest == &app ? "cotune" : deepest->get_name(),
                       hint.empty() ? "" : hint);
  }
  return out;
}

}  // namespace
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
  CLI::App app{"cotune: LoRA / QLoRA fine-tuning of reasoning LLMs (Qwen2, Qwen2.5, Qwen3, Llama 3, Mistral), natively in C++/CUDA"};
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
  std::vector<std::string> args = cli::normalise_flag_spelling(argc, argv);
  if (const std::string bad = cli::check_subcommand_words(app, args, 0, ""); !bad.empty()) {
    log::error("{}", bad);
    return 2;
  }
  std::reverse(args.begin(), args.end());  // CLI11 takes the arguments last-first
  try {
    app.parse(args);
  } catch (const CLI::ExtrasError& e) {
    std::fprintf(stderr, "%s%s\nRun with --help for more information.\n", e.what(),
                 cli::suggest_flags(app, app.remaining(true)).c_str());
    return e.get_exit_code();
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
