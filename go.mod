module github.com/osimage/updatecache

go 1.25.0
