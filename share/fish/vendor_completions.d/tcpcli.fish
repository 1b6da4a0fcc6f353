# tcpcli's fish completion. It asks the installed tcpcli for its script, so the script
# always matches the click that answers it.
tcpcli completion fish | source
