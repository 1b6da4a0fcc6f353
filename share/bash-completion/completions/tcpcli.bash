# tcpcli's bash completion, loaded on demand by bash-completion. It asks the installed
# tcpcli for its script, so the script always matches the click that answers it.
eval "$(tcpcli completion bash)"
