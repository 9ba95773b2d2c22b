module snapshot

go 1.26
