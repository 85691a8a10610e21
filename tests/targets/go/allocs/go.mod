module allocs

go 1.19
