import BreakwaterServer
print(Engine.libeventVersion())
