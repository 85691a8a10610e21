module example.com/gonames

go 1.19
