module tostring

go 1.19
