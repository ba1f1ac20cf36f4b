module cotune/tools/check_ollama_template

go 1.19
