module regex

go 1.19
